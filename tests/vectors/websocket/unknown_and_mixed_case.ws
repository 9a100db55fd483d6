# unknown names are kept (even repeated) and names compare case-insensitively
# expect: complete 56
# field: header_count = 3
# field: host = example.com:8080
/a/b\r\n
x-custom: 1\r\n
Host: example.com:8080\r\n
x-custom: 2\r\n
