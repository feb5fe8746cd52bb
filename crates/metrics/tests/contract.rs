//! The label values must stay identical to the names the protocol crate
//! gives the daemon, or commands would silently be counted as "unknown".

use vugpu_metrics::{COMMAND_NAMES, ERROR_CODE_NAMES};
use vugpu_protocol::ErrorCode;

#[test]
fn test_command_names_match_protocol_crate() {
    // Arrange / Act
    let ours = COMMAND_NAMES.to_vec();
    let protocol = vugpu_protocol::COMMAND_NAMES.to_vec();

    // Assert
    assert_eq!(ours, protocol);
}

#[test]
fn test_error_code_names_match_protocol_crate() {
    // Arrange / Act
    let protocol: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();

    // Assert
    assert_eq!(ERROR_CODE_NAMES.to_vec(), protocol);
}
