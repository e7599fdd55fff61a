"""The Ivanti Event Notification Service plug-in: the broker simulator behind the conformance.vendors interface."""
