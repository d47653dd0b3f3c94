//! Integration tests, one binary (links once): scenarios run end to end through the actors.

mod bad_input;
mod calibrate;
mod closed_form;
mod common;
mod device;
mod execute;
mod faults;
mod fuzz;
mod noise;
mod overload;
mod physics;
mod reference;
mod search;
mod shipped;
mod sweep;
