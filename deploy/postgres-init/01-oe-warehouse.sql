-- The oe_assets warehouse's database, beside Dagster's on the compose file's PostgreSQL server
-- (run once, when the server's volume is created). OE_WAREHOUSE points at it.
CREATE DATABASE oe_warehouse;
