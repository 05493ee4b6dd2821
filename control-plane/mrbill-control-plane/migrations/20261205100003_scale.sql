-- Scaling a cell's services (`mrbill cell scale`) is an operation like the others.
ALTER TABLE cells DROP CONSTRAINT cells_op_check;
ALTER TABLE cells ADD CONSTRAINT cells_op_check
    CHECK (op IN ('provision', 'suspend', 'resume', 'delete', 'migrate', 'abort', 'scale'));
