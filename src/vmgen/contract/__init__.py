"""What the laptop and the VM agree on: the names of users, paths, ports and units on the VM
(names.py), the documents that cross between them (documents.py), how those are checked when
read (codec.py), and the protocol of root's control socket (control.py).

Standard library only, and nothing else of vmgen but its error hierarchy: the bottom layer,
imported by the renderer, the CLI, the VM's services and the page server alike.
"""
