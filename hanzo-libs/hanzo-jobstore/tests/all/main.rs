//! Integration tests of the job store, one module per topic. Every test works on a real
//! SQLite database in a temporary directory; the crash test kills a real child process.

mod concurrency;
mod crash;
mod modes;
mod ops;
mod pagination;
mod placements;
mod recovery;
mod retention;
mod tools;
mod util;
