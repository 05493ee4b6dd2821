-- The trace context of what queued a cell's current operation (the API request, or the
-- operation before it): the operation's trace links to it. NULL when traces are off.
ALTER TABLE cells ADD COLUMN op_traceparent TEXT;
