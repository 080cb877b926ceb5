//! Placeholder until the API issue lands.
