# the first line is empty
# expect: error ws_empty_resource 0
\r\n
host: a\r\n
