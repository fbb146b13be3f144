-- attendance 0.3.0 -> 0.4.0: a log that stays fast for years (partitions and retention),
-- high availability, and reports beyond one class (courses, alerts, exports, privacy).
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.4.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Partitions and retention (docs/architecture.md)
-------------------------------------------------------------------------------
-- (issue 14: nothing yet)

-------------------------------------------------------------------------------
-- High availability
-------------------------------------------------------------------------------
-- (issue 15: nothing yet)

-------------------------------------------------------------------------------
-- Courses, low-attendance alerts and exports
-------------------------------------------------------------------------------
-- (issue 16: nothing yet)

-------------------------------------------------------------------------------
-- Privacy: secrets in stored bodies, forgetting a person
-------------------------------------------------------------------------------
-- (issue 16: nothing yet)
