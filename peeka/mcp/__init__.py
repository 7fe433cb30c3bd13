"""``peeka mcp``: Peeka's diagnostic verbs as Model Context Protocol tools.

``tools`` reads each tool from its CLI command (schema, defaults, the argv a call becomes; no SDK
needed), ``summary`` writes the short text beside each structured result, and ``server`` serves them
on the official MCP SDK (Python 3.10+) over stdio or streamable HTTP.
"""
