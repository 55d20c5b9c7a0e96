-- The project's own migration files (MIGRATIONS_DIR, default migrations/, named NNNN_name.sql):
-- `migrate` applies each once, in order, before it compares the jobs' tables with their
-- declarations. They are how a column's type or a table's key changes; `migrate` itself only
-- creates tables and adds columns.
CREATE TABLE nightshift.job_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
