# plot.gp - lokrd time / base sgemm at 64 rows (1 adapter and 64 distinct
# adapters) and time / max(MAC floor, bytes floor), per shape x factor x W2.
# Called by bench/aggregate.py: gnuplot -e "datafile='..'; outfile='..'; n=N" plot.gp
set terminal png size 1400,620 font ",9"
set output outfile
set title "lokrd, 64 rows: time / base sgemm (1 and 64 distinct adapters) and time / floor"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -60 scale 0 font ",7"
set ylabel "ratio"
set yrange [0:*]
set grid ytics
set key top left
set arrow from graph 0, first 1.10 to graph 1, first 1.10 nohead dt 2 lc rgb "red"
set arrow from graph 0, first 1.5 to graph 1, first 1.5 nohead dt 3 lc rgb "black"
plot datafile using 3:xtic(2) title "64 rows, 1 adapter / base", \
     '' using 4 title "64 rows, 64 adapters / base", \
     '' using 5 title "64 x 64: time / floor"
