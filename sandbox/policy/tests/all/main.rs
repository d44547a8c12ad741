//! Integration tests of the policy views: the data-driven policy cases and the views' behaviour
//! on generated data.

mod cases;
mod classify;
mod execution;
mod fixture;
mod twins;
