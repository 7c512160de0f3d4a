//! Flows: the table that finds them, the timers that expire them, and their states.

pub mod state;
pub mod table;
pub mod timers;
