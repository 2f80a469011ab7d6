"""The modelplane platform as typed Pulumi ComponentResources, plus the offline render engine and CLI."""
