# folded or indented header lines are not allowed
# expect: error ws_bad_header_line 13
/x\r\n
host: a\r\n
 b: c\r\n
