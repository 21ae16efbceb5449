// Reports one exception as an OpenTelemetry log record with OpenTelemetry JS, the way a Node service that
// opted into OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs would, inside a request's span; plus one plain record.
// Usage: node node_logs.js URL proto|json SERVICE
// Prints one JSON line: {"trace_id", "span_id", "stack"}.
"use strict";
const { trace, context, ROOT_CONTEXT } = require("@opentelemetry/api");
const { SeverityNumber } = require("@opentelemetry/api-logs");
const { LoggerProvider, SimpleLogRecordProcessor } = require("@opentelemetry/sdk-logs");
const { BasicTracerProvider } = require("@opentelemetry/sdk-trace-base");
const { defaultResource, resourceFromAttributes } = require("@opentelemetry/resources");

const [url, format, service] = process.argv.slice(2);
const Exporter =
  format === "json"
    ? require("@opentelemetry/exporter-logs-otlp-http").OTLPLogExporter
    : require("@opentelemetry/exporter-logs-otlp-proto").OTLPLogExporter;
const exporter = new Exporter({ url, compression: format === "json" ? "none" : "gzip", timeoutMillis: 10000 });
const resource = defaultResource().merge(
  resourceFromAttributes({ "service.name": service, "deployment.environment.name": "node-test" })
);
const logs = new LoggerProvider({ resource, processors: [new SimpleLogRecordProcessor({ exporter })] });
const logger = logs.getLogger("node-logs-test", "1.0.0");
const tracer = new BasicTracerProvider({ resource }).getTracer("node-logs-test");

function chargeCard(amount) {
  throw new TypeError(`cannot charge ${amount}: card declined`);
}

const span = tracer.startSpan("POST /charge");
const within = trace.setSpan(ROOT_CONTEXT, span);
logger.emit({ severityNumber: SeverityNumber.INFO, body: "charging", context: within });
let stack = "";
try {
  chargeCard(42);
} catch (error) {
  stack = error.stack;
  logger.emit({ severityNumber: SeverityNumber.ERROR, eventName: "exception", exception: error, context: within });
}
span.end();

logs.shutdown().then(() => {
  const { traceId, spanId } = span.spanContext();
  console.log(JSON.stringify({ trace_id: traceId, span_id: spanId, stack }));
});
