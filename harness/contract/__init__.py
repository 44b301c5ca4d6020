"""The contract under test (DESIGN.md §1) as one vocabulary: clauses, families, status codes,
verdicts, the judging rules (pure functions) and errata. Every other part of the harness (the
cases, the plugin, the reports) speaks it; nothing here does I/O on a device."""
