"""Where every node's metadata service answers: the one definition of the address.

The service (this package) imports nothing from netsim, so the constant lives here and
netsim, its in-VM programs and its test beds import it from ``netsim_imds``.
"""

METADATA_ADDRESS = "169.254.169.254"
"""The link-local address of the In-VM Metadata Service on every node (every cloud uses it)."""

METADATA_PORT = 80
"""Its TCP port."""
