"""Business logic that writes (HackSoft style). One module per area; import from the module."""
