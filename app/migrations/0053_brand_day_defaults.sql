-- A document's and an order's date, when the insert names none, is the brands' day
-- (Asia/Shanghai, app/localtime.py), not the database server's: a sale made between 00:00 and
-- 08:00 in Beijing was dated the day before (probe V), while its number had the right day.
ALTER TABLE documents ALTER COLUMN doc_date SET DEFAULT (now() AT TIME ZONE 'Asia/Shanghai')::date;
ALTER TABLE orders ALTER COLUMN order_date SET DEFAULT (now() AT TIME ZONE 'Asia/Shanghai')::date;
