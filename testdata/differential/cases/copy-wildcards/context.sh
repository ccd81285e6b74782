echo 1 > one.txt && echo 2 > two.txt && echo f1 > file1.txt && echo fx > filex.txt
echo a > a.md && echo ab > ab.md && mkdir sub1 sub2 && echo s1 > sub1/f && echo s2 > sub2/g
