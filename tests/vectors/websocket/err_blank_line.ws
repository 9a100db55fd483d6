# an empty header line
# expect: error ws_bad_header_line 4
/x\r\n
\r\n
