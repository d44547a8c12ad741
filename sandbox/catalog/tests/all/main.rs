//! Integration tests of the catalog: one binary, one module per concern.
