// Compiled and run by tests/test_stacktraces_java.py. For each scenario it prints the real
// printStackTrace() text and, after it, every throwable of the cause chain with its full frames.
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.Method;
import java.util.List;

public class Crash {
    static class Repository {
        void load(String id) {
            throw new IllegalArgumentException("no such id: " + id + "\nsecond line of the message");
        }
    }

    static class Service {
        private final Repository repository = new Repository();

        void handle(String id) {
            try {
                repository.load(id);
            } catch (IllegalArgumentException e) {
                throw new IllegalStateException("service failed", e);
            }
        }
    }

    static void controller() {
        try {
            new Service().handle("42");
        } catch (RuntimeException e) {
            RuntimeException top = new RuntimeException("request failed", e);
            top.addSuppressed(new UnsupportedOperationException("while closing"));
            throw top;
        }
    }

    static void npe(String s) {
        s.length();
    }

    public static void target(int x) {
        throw new ArithmeticException("bad " + x);
    }

    static void emit(String name, Throwable t) {
        StringWriter text = new StringWriter();
        t.printStackTrace(new PrintWriter(text, true));
        System.out.println("=====TRACE " + name);
        System.out.print(text);
        System.out.println("=====DUMP");
        for (Throwable c = t; c != null; c = c.getCause()) {
            System.out.println("E|" + c.getClass().getName() + "|" + String.valueOf(c.getMessage()).replace("\n", "\\n"));
            for (StackTraceElement e : c.getStackTrace()) {
                System.out.println("F|" + e.getClassName() + "|" + e.getMethodName() + "|" + e.getFileName()
                        + "|" + e.getLineNumber() + "|" + e.getModuleName());
            }
        }
        System.out.println("=====END");
    }

    public static void main(String[] args) throws Exception {
        try { controller(); } catch (Throwable t) { emit("chain", t); }
        try { List.of("a").forEach(x -> npe(null)); } catch (Throwable t) { emit("lambda", t); }
        try {
            Method m = Crash.class.getMethod("target", int.class);
            m.invoke(null, 7);
        } catch (Throwable t) { emit("reflection", t); }
        Thread worker = new Thread(() -> { throw new IllegalStateException("in a worker"); }, "worker-1");
        worker.start();
        worker.join();
    }
}
