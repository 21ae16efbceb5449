// A Java service that knows nothing of Sentry: java.util.logging only. Run under the OpenTelemetry Java agent
// (OTEL_INSTRUMENTATION_METHODS_INCLUDE=JavaLogs[handle] makes handle() a span), its log records, the
// exception's among them, go to OTLP /v1/logs with the span's trace context.
// Prints one line: the stack trace of the exception it logged.
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.logging.Level;
import java.util.logging.Logger;

public class JavaLogs {
    private static final Logger LOGGER = Logger.getLogger("com.example.shop.Checkout");

    static void chargeCard(int amount) {
        throw new IllegalStateException("cannot charge " + amount + ": card declined");
    }

    static String handle() {
        LOGGER.info("charging");
        try {
            chargeCard(42);
        } catch (IllegalStateException error) {
            LOGGER.log(Level.SEVERE, "checkout failed", error);
            StringWriter text = new StringWriter();
            error.printStackTrace(new PrintWriter(text));
            return text.toString();
        }
        return "";
    }

    public static void main(String[] args) {
        System.out.println(handle().replace("\n", "\\n"));
    }
}
