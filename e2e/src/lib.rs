//! Harness for end-to-end tests: real `sozu` processes, real backends, real clients.
