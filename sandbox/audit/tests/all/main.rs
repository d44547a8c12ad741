//! The output audit: each rule at its boundary on a hand-made dataset, and real module runs on
//! a generated city.

mod examples;
mod rules;
