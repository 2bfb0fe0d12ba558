-- A sale scanned in the staff app while offline reaches the server later — hours, or days after
-- a weekend without signal — and was dated when it arrived: the sales analytics put it on the
-- wrong day (or month). The phone's time of the sale (``client_at``, as an inspection's and a
-- field check-in's) is kept on its document and dates the movement (never before the units'
-- last movement, never after the server's clock).
ALTER TABLE documents ADD COLUMN client_at timestamptz;
