# host twice, in two spellings
# expect: error ws_duplicate_header 13
/x\r\n
host: a\r\n
Host: b\r\n
