//! Integration tests of the policy views: the data-driven policy cases, the output contracts
//! judged like SQL, and the views' behaviour on generated data.

mod cases;
mod classify;
mod contract;
mod execution;
mod fixture;
mod twins;
