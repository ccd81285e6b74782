echo 'not an archive' > fake.tar.gz
