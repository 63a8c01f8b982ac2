"""Landing: API -> raw tables, verbatim, transactional."""
