//! Tests of GpuState.
