"""The data model: tables, keys and relations, declared once in model.json; drives the assets, the checks and the export."""
