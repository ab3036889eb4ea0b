"""The laptop half of vmgen: the command line, launching, the providers, rendering the
user-data, and talking to a workspace over SSH. Nothing here runs on a workspace VM (its wheel
carries these files, but not their dependencies); what both halves use is in `contract`,
`backup` and `dns`."""
