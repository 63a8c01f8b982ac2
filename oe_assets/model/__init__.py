"""The data model: tables, keys and relations, declared once; drives the checks and the export."""
