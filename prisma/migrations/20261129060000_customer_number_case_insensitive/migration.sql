-- Customer numbers are unique regardless of case, as they are searched ("K-1" and "k-1" are one
-- customer). The unique index is rebuilt on the new type; should two organisations differ only in
-- the case of their customer number, this migration stops with a unique violation naming them, and
-- an operator decides which one to rename before migrating again.
ALTER TABLE "organizations" ALTER COLUMN "customer_number" SET DATA TYPE CITEXT;
