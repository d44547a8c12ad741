//! Integration tests of the generator.
