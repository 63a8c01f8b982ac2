"""The data model's checks: primary keys, relations, schema drift."""
