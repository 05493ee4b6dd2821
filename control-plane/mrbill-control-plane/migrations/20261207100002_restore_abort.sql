-- A restore can be undone before its switch (`unrestore`): the cell as it was serves again.
ALTER TABLE cells DROP CONSTRAINT cells_op_check;
ALTER TABLE cells ADD CONSTRAINT cells_op_check
    CHECK (op IN ('provision', 'suspend', 'resume', 'delete', 'migrate', 'abort', 'scale',
                  'restore', 'unrestore'));
ALTER TABLE restores ADD COLUMN aborted_at timestamptz;
-- The restore brought a deleted tenant back (there is no cell as it was to return to).
ALTER TABLE restores ADD COLUMN readmitted boolean NOT NULL DEFAULT false;
