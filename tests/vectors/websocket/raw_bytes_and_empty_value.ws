# values are raw bytes (not UTF-8 here) and may be empty
# expect: complete 58
# field: origin = http://\xe9xample.com
# field: sec-websocket-protocol = 
/r\r\n
origin: http://\xe9xample.com\r\n
sec-websocket-protocol: \r\n
