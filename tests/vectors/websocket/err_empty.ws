# an empty payload has no resource line
# expect: error ws_empty_resource 0
