-- attendance 0.5.0 -> 0.5.1: the schema is built from topical sources (sql/src); nothing
-- in it changes.
\echo Use "ALTER EXTENSION attendance UPDATE TO '0.5.1'" to load this file. \quit
