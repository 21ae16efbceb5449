// Exports one trace with OpenTelemetry JS to an OTLP/HTTP endpoint, the way a Node service would.
// Usage: node node_export.js URL proto|json SERVICE
// A SERVER span "GET /checkout" with a child whose real thrown Error is recorded as an exception event.
// Prints one JSON line: {"trace_id", "root_span_id", "child_span_id", "stack", "result"}.
"use strict";
const { trace, context, SpanKind, SpanStatusCode } = require("@opentelemetry/api");
const { BasicTracerProvider, SimpleSpanProcessor } = require("@opentelemetry/sdk-trace-base");
const { defaultResource, resourceFromAttributes } = require("@opentelemetry/resources");

const [url, format, service] = process.argv.slice(2);
const Exporter =
  format === "json"
    ? require("@opentelemetry/exporter-trace-otlp-http").OTLPTraceExporter
    : require("@opentelemetry/exporter-trace-otlp-proto").OTLPTraceExporter;
const exporter = new Exporter({ url, compression: format === "json" ? "none" : "gzip", timeoutMillis: 10000 });

let result = null;
const recording = {
  export(spans, done) {
    exporter.export(spans, (outcome) => {
      result = outcome;
      done(outcome);
    });
  },
  shutdown: () => exporter.shutdown(),
  forceFlush: () => exporter.forceFlush(),
};
const provider = new BasicTracerProvider({
  resource: defaultResource().merge(
    resourceFromAttributes({ "service.name": service, "deployment.environment.name": "node-test" })
  ),
  spanProcessors: [new SimpleSpanProcessor(recording)],
});
const tracer = provider.getTracer("node-export-test", "1.0.0");

function chargeCard(amount) {
  throw new TypeError(`cannot charge ${amount}: card declined`);
}

const root = tracer.startSpan("GET /checkout", {
  kind: SpanKind.SERVER,
  attributes: { "http.request.method": "GET", "http.route": "/checkout", "http.response.status_code": 500 },
});
const child = tracer.startSpan("charge", { kind: SpanKind.INTERNAL }, trace.setSpan(context.active(), root));
let stack = "";
try {
  chargeCard(42);
} catch (error) {
  stack = error.stack;
  child.recordException(error);
  child.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
}
child.end();
root.setStatus({ code: SpanStatusCode.ERROR });
root.end();

provider.shutdown().then(() => {
  console.log(
    JSON.stringify({
      trace_id: root.spanContext().traceId,
      root_span_id: root.spanContext().spanId,
      child_span_id: child.spanContext().spanId,
      stack,
      result: result && { code: result.code, error: result.error && String(result.error) },
    })
  );
});
