//! The IoT Hub query language (WHERE conditions and SELECT queries).
