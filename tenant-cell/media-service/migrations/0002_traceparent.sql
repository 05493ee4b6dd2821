-- The W3C traceparent of the request that queued the job, so its render joins that trace
-- (NULL when the request was not traced).
ALTER TABLE media_jobs ADD COLUMN traceparent text;
