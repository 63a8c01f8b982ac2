"""PostgreSQL as a target of the warehouse: its URL, the names it can hold, the types values take,
and the copy of a whole warehouse (`oe-assets warehouse copy --to postgresql://...`)."""
