//! goalpost-runner
