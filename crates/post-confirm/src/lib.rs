//! Placeholder until the Lambda issue lands.
