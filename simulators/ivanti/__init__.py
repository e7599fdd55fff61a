"""The Ivanti Event Notification Service simulator: an MQTT broker over mutual TLS 1.2, the CPS REST calls, and device events."""
