"""Output plug-ins: deliver one sealed envelope, return the receiver's receipt."""
