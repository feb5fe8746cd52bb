//! EDID generation (todo).
