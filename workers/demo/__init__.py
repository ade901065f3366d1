"""`aiops demo`: the bookmark service misbehaves in six ways and aiops deals with each."""
