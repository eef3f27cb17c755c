//! Property tests of the life-cycle state machine (random event sequences
//! and times).
